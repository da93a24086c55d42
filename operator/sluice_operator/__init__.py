"""The Sluice operator: reconciles StreamingPipeline resources into topics, checkpoint storage and Spark pods."""
