package lease_test

import (
	"testing"

	"github.com/coord-go/coord/etcdtest"
)

var srv *etcdtest.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }
