# Kernel settings for `make demo` / `make test` (the Makefile points IPYTHONDIR here).
# TensorFlow writes C++ start-up logs (oneDNN, CUDA probing) straight to file descriptor 2,
# with timestamps and pids. Captured, they land in whichever cell happens to be running when
# the kernel forwards them, which makes committed outputs non-reproducible. Not capturing
# file-descriptor output sends them to the terminal that runs make instead.
c.IPKernelApp.capture_fd_output = False  # noqa: F821
