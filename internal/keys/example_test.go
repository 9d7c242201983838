package keys_test

import (
	"fmt"

	"github.com/coord-go/coord/internal/keys"
)

// Names that etcd's own recipes would let collide get disjoint subtrees.
func ExampleNew() {
	for _, name := range []string{"a", "a/b", "a/"} {
		sp, _ := keys.New("coord/", keys.KindLock, name)
		fmt.Println(sp.Key("w", "1"))
	}
	_, err := keys.New("coord/", keys.KindLock, "")
	fmt.Println(err)
	// Output:
	// coord/lock/a/w/1
	// coord/lock/a%2Fb/w/1
	// coord/lock/a%2F/w/1
	// lock invalid name: name is empty
}
