"""Reading pre-trained weights (torchvision / timm ResNets, Hugging Face BERT) into the model."""
