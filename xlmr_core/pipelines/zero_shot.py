"""`zero-shot-classification`: an NLI model scores "text entails 'This example is {label}.'" per label."""

from __future__ import annotations

import numpy as np

from ..errors import short
from . import scores
from .base import Pipeline, Prepared
from .errors import PipelineError, check_bool, check_text

DEFAULT_TEMPLATE = "This example is {}."


class ZeroShotClassificationPipeline(Pipeline):
    """`{"sequence", "labels", "scores"}` per text, labels best first. Without `multi_label` the
    entailment logits are soft-maxed across labels; with it (or one label) each label's
    entailment is soft-maxed against its contradiction on its own."""

    task = "zero-shot-classification"
    head = "ForSequenceClassification"
    token_level = False
    defaults = {"candidate_labels": None, "hypothesis_template": DEFAULT_TEMPLATE, "multi_label": False}

    def prepare(self):
        self.entailment_id = next(
            (index for label, index in self.config.label2id.items() if label.lower().startswith("entail")),
            None,
        )
        if self.entailment_id is None:
            raise PipelineError(
                f"zero-shot-classification needs an NLI model with an entailment label in id2label, "
                f"this one has {short(sorted(self.config.label2id), 120)}"
            )

    def __call__(self, sequences, *args, **options):
        if len(args) == 1 and "candidate_labels" not in options:
            options["candidate_labels"] = args[0]
        elif args:
            raise PipelineError(
                "zero-shot-classification takes (sequences, candidate_labels) and options by name"
            )
        return super().__call__(sequences, **options)

    def is_single(self, inputs):
        return isinstance(inputs, str)

    def check_options(self, options):
        labels = options["candidate_labels"]
        if isinstance(labels, str):
            labels = [label.strip() for label in labels.split(",") if label.strip()]
        if not isinstance(labels, (list, tuple)) or not labels:
            raise PipelineError(
                "candidate_labels must name at least one label (a list, or a comma-separated string)"
            )
        options["candidate_labels"] = [
            check_text(label, f"candidate_labels[{i}]") for i, label in enumerate(labels)
        ]
        template = check_text(options["hypothesis_template"], "hypothesis_template")
        try:
            filled = template.format(labels[0])
        except (IndexError, KeyError, ValueError):
            filled = template
        if filled == template:
            raise PipelineError(f"hypothesis_template {short(template, 80)} must hold one {{}} for the label")
        check_bool(options["multi_label"], "multi_label")
        return options

    def preprocess(self, item, options, where):
        check_text(item, where)
        template = options["hypothesis_template"]
        rows = []
        for label in options["candidate_labels"]:
            encoding = self.tokenizer(
                item, template.format(label), truncation="only_first", max_length=self.max_length(options)
            )
            rows.append(encoding["input_ids"])
        return Prepared(rows, {"sequence": item})

    def postprocess(self, prepared, outputs, options):
        labels = options["candidate_labels"]
        logits = np.stack([np.asarray(out["logits"], dtype=np.float64) for out in outputs])
        if options["multi_label"] or len(labels) == 1:
            contradiction_id = -1 if self.entailment_id == 0 else 0
            values = scores.softmax(logits[:, [contradiction_id, self.entailment_id]])[:, 1]
        else:
            values = scores.softmax(logits[:, self.entailment_id])
        order = scores.best_first(values, None)
        return {
            "sequence": prepared.meta["sequence"],
            "labels": [labels[i] for i in order],
            "scores": [float(values[i]) for i in order],
        }
