"""Provider dialects: each turns one provider's wire format into streamcore's event model."""
