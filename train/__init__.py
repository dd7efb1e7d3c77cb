"""Training recipes: the replay renderer, the dataset builder, base pretraining and both stages; they import the model from core/."""
