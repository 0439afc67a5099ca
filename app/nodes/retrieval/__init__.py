"""The retrieval nodes (``index``, ``retriever``) and what they stand on: chunking, the vector
stores (Qdrant, pgvector), BM25 keyword ranking and Reciprocal Rank Fusion."""
