"""The demo's RPC methods (PROTOCOL.md section 14), served by ``manage.py telegraphy_worker``; minting puts
them in the token's ``rpc`` grant of every user their ``allow`` admits (default: signed-in users)."""

import telegraphy

from . import chat


@telegraphy.rpc("chat.send")
def chat_send(request):
    """``tg.rpc("chat.send", {room, text})`` -> ``{"id": <message pk>}``; the message reaches the room's pages
    as ``demo.chat.<room>.message``. Errors (``RpcError`` codes): ``bad_request`` is the protocol's, so a
    data that is not an object is ``bad_data``; then ``bad_room``, ``bad_text``, ``empty``, ``too_long``."""
    data = request.data
    if not isinstance(data, dict):
        raise telegraphy.RpcError("bad_data", 'send {"room": ..., "text": ...}')
    try:
        message = chat.post(request.user, data.get("room"), data.get("text"))
    except chat.ChatError as exc:
        raise telegraphy.RpcError(exc.code, exc.message) from None
    return {"id": message.pk}
