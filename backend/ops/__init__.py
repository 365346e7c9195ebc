"""Operations: dead letters and metrics."""
