/// The etcd v3 gRPC API served from the built-in store (lands with issue 3).
public enum EtcdAPI {}
