package natsconf

// Headers the edge sets on every command request; handlers read identity
// from these and never from the client's frame.
const (
	// HeaderConn carries the id of the connection that sent the command.
	HeaderConn = "Natter-Conn"
	// HeaderUser carries the authenticated user id of that connection.
	HeaderUser = "Natter-User"
	// HeaderEdge carries the id of the edge holding the connection.
	HeaderEdge = "Natter-Edge"
	// HeaderRooms carries the room patterns the user may join, comma
	// separated; absent means any room.
	HeaderRooms = "Natter-Rooms"
	// HeaderBroadcast is "1" when the user may broadcast.
	HeaderBroadcast = "Natter-Broadcast"
)

// Headers handlers set on a reply or on a message to a connection subject to
// ask the edge to change what the connection listens to.
const (
	// HeaderOp names a control operation: OpSubscribe, OpUnsubscribe or
	// OpKick.
	HeaderOp = "Natter-Op"
	// HeaderRoom names the room of OpSubscribe and OpUnsubscribe.
	HeaderRoom = "Natter-Room"
	// HeaderProbe on a request to a user subject asks edges holding a
	// connection of that user to answer, without delivering anything.
	HeaderProbe = "Natter-Probe"
	// HeaderSeq on a pending dm entry names the seq of the stored dm.
	HeaderSeq = "Natter-Seq"
	// HeaderFirst on a connect event says the connection is its user's
	// first on that edge (the user was not online there before).
	HeaderFirst = "Natter-First"
	// HeaderNoEcho on a message to a room subject (live, or stored on a
	// room store subject, whose republished copy keeps its headers) or to
	// a user subject asks the edges not to deliver it to the connection
	// named by HeaderConn: typing indicators, "send" with "echo":false,
	// a read position for the user's other connections.
	HeaderNoEcho = "Natter-No-Echo"
)

// Control operations a handler can ask of an edge for one connection.
const (
	// OpSubscribe makes the connection receive the room's messages.
	OpSubscribe = "sub"
	// OpUnsubscribe stops the connection receiving the room's messages.
	OpUnsubscribe = "unsub"
	// OpKick closes the connection with bye code "kicked".
	OpKick = "kick"
)
