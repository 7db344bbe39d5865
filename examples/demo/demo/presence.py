"""What others see of a user present on a chat room or an item page: the presence ``info`` of the user's tokens
(``TELEGRAPHY["TOKEN_INFO"]`` in settings; PROTOCOL.md section 11)."""


def token_info(user):
    return {"name": user.get_full_name() or user.get_username()}
