"""V8 (Node.js) support: discovery from postmortem metadata, the BPF frame step, naming from memory."""
