package watch

// Rebuilds reports how often l was sorted and rebuilt.
func Rebuilds(l *Line) int { return l.rebuilds }
