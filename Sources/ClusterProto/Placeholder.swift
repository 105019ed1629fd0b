// Generated code for Protos/cluster.proto lands here.
public enum ClusterProtoNamespace {}
