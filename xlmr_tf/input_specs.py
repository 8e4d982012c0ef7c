"""The model's input spec where Keras and TF's converters look for it on a subclassed model.

Keras (`keras.export`'s signature inference) and `tf.lite.TFLiteConverter.from_keras_model`
build a subclassed model's input signature from `model._build_shapes_dict["input_shape"]`
(the shapes of the first call, batch made dynamic) and `model.input_dtype`. Keras's defaults
record the dummy build call's `[1, 2]` ids and the float compute dtype, which the id checks
refuse (the converter swallows that and fails later on an unrelated TypeError). Here they
describe the serving inputs: int32 ids and mask of any batch and length.

`input_dtype` is also what Keras autocasts floating inputs to, so the model does that cast
itself (to the compute dtype, as Keras would) and Keras's own input conversion is off.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class ServingInputSpec:
    """Mixed into the Keras models: `input_dtype`, `_build_shapes_dict` and the float autocast."""

    def _init_input_conversion(self) -> None:
        # Keras would cast floating inputs to `input_dtype` (int32): `autocast_floats` does it.
        self._convert_input_args = False

    @property
    def input_dtype(self):
        """The dtype of the ids and mask the model serves (`serving_signature`)."""
        return "int32"

    @property
    def _build_shapes_dict(self):
        # Derived from the config, not recorded from the dummy call: see the module docstring.
        if not getattr(self, "built", False) or not hasattr(self, "config"):
            return None
        return {"input_shape": {name: tuple(spec.shape) for name, spec in self.serving_signature().items()}}

    @_build_shapes_dict.setter
    def _build_shapes_dict(self, value) -> None:
        pass  # Keras records the first call's shapes (and a .keras file's build config) here

    def autocast_floats(self, structure):
        """Floating tensors in `structure` cast to the compute dtype, as Keras's input conversion does."""
        if not self.autocast:
            return structure
        dtype = tf.as_dtype(self.compute_dtype)

        def cast(value):  # keras.ops: symbolic (functional) inputs too
            if hasattr(value, "dtype") and tf.as_dtype(value.dtype).is_floating and value.dtype != dtype:
                return keras.ops.cast(value, dtype)
            return value

        return tf.nest.map_structure(cast, structure)
