"""nullsae: do my SAE results show structure the model learned, or would a null model score the same?"""

__version__ = "0.1.0"
