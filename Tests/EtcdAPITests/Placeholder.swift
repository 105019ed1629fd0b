// The etcd v3 API tests (issue 3).
