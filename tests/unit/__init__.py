"""One module of the library (or of this suite) called directly, on real databases where it needs them."""
