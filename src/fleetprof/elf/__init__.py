"""ELF primitives shared by the process tracker, the unwind-table compiler and the symbolizer."""
