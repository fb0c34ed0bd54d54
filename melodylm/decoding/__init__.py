"""One decoding core for sampling and scoring: the model is stepped with a carried state."""
