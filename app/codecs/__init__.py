"""Request body parsers: the fast accept-only JSON check, CSV rows (SageMaker), OIP tensors."""
