package aelocal

// datastoreService implements the "datastore_v3" service.
type datastoreService struct{}

func newDatastoreService() *datastoreService { return &datastoreService{} }
