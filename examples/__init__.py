"""Runnable examples: each adapter runs the DESIGN §11 workflow offline."""
