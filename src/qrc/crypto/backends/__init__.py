"""Provider back ends: one module per library we build on."""
