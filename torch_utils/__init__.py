"""PyTorch utilities shared by the networks and tools: self-contained pickles (`persistence`),
small helpers (`misc`), cross-process statistics (`training_stats`), the JIT extension loader
(`custom_ops`) and the custom ops (`ops`). Names and signatures match NVIDIA's torch_utils, because
network pickles from StyleGAN2-ADA/StyleGAN3/Ray Conditioning call them from their own source."""
