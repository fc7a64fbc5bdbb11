"""Generator families the toolkit trains itself (`cifake zoo train`): native 32-pixel FAKE
images from generators with different ways of making pixels, and aligned fakes (REAL images
passed through a generator) for `cifake build --generator GEN_DIR` / ``aligned:GEN_DIR``."""
