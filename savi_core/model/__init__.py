"""The SAVi model: encoder, slot initializers, corrector, predictor, decoder, checkpoints; no tracking."""
