"""Cross-border payments: FX quotes, screening, payment-versus-payment settlement."""
