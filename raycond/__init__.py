"""raycond: ray-conditioned GANs. Cameras and rays (`camera`, `rays`), opening any network file
(`loading`), turning seeds and cameras into images (`generate`), and procedural posed datasets
(`synth`)."""

__version__ = "0.1.0"
