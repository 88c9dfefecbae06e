"""Models: where weights come from, encoders, heads (one class each), LoRA or full fine-tuning, batches, the
LightningModule, and the tiny random models of the tests."""
