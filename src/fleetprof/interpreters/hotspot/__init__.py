"""HotSpot (JVM) frames: discovery of libjvm.so, layouts from its VMStructs tables, code heap reads, names."""
