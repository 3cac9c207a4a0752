"""Device types of VIRTIO 1.3 chapter 5: layouts, encodings and response oracles."""
