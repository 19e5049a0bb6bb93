"""Alert rules, their evaluation and the ISA-18.2 alert lifecycle."""
