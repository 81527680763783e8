"""The official scorers, in plain Python: VQA accuracy, NLVR2 accuracy and consistency,
retrieval Recall@K. They import nothing of the package, so the data layer (the VQA
answer targets) and the evaluators both build on them."""
