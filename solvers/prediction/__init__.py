"""Output-length predictors: what policies see instead of the true output length."""
