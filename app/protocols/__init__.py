"""Request formats other than /predict's JSON: CSV rows (SageMaker) and OIP tensors."""
