package store

// SQLite is set up once per process, in this order, before any connection
// opens: the page cache first (SQLite accepts it only before it
// initializes itself, which registering a VFS or an extension does), then
// the writer's VFS, then the planner setting every connection takes.
func init() {
	registerPageCache()
	registerCoalesceVFS()
	registerQPSG()
}
