"""Real VIRTIO drivers judged by the spec: Linux's virtio-blk driving pvspec's back-end
(``pvspec conform --target linux-virtio:blk``).  :mod:`.judge` holds the driver rules a
back-end can observe, :mod:`.machine` boots the guest, :mod:`.report` renders the run."""
