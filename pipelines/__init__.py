"""KFP pipelines of safetax; compiled YAML lives in pipelines/compiled/."""
