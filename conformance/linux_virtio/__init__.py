"""Real VIRTIO drivers judged by the spec: Linux's virtio-blk and virtio-net driving
pvspec's back-ends (``pvspec conform --target linux-virtio:blk`` / ``:net``).
:mod:`.judge` holds the driver rules a back-end can observe, :mod:`.machine` boots the
guest, :mod:`.peer` is the net wire's far end, :mod:`.report` renders the run."""
