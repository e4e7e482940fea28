pub mod create_embeddings;
mod vectors;
