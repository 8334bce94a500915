"""Quality metrics (FID, KID, precision/recall, PPL, IS) and camera-control accuracy (pose_err);
`metrics.metric_main` is the registry that training and calc_metrics.py call."""
