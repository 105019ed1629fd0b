import TestGate
import Testing

/// Every suite of this target, one after another: they start clusters and processes, and
/// `check perf` judges latency, so they must not load the machine for each other.
@Suite(.serialized, .heavy) enum EtcdAPITestSuites {}
