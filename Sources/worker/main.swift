print("worker: lands with the runtimes")
