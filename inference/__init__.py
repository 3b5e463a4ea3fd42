"""What a trained model says about a video: labels, a timeline of sliding windows, Grad-CAM, and the
clip reading and heat-map pictures that the relation visualizer shares."""
