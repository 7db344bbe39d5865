"""Demo users: admin/admin (superuser, staff) and alice/alice (a regular user who owns two items)."""

from decimal import Decimal

from django.contrib.auth.hashers import make_password
from django.db import migrations


def create_users(apps, schema_editor):
    User = apps.get_model("auth", "User")
    Item = apps.get_model("demo", "Item")
    admin, _ = User.objects.get_or_create(
        username="admin", defaults={"is_staff": True, "is_superuser": True, "password": make_password("admin")}
    )
    alice, _ = User.objects.get_or_create(username="alice", defaults={"password": make_password("alice")})
    # Historical models send no signals to telegraphy: seeding publishes nothing, as it should.
    if not Item.objects.exists():
        Item.objects.create(name="Teapot", price=Decimal("12.50"), owner=admin)
        Item.objects.create(name="Alice's notebook", price=Decimal("3.20"), owner=alice)


def remove_users(apps, schema_editor):
    apps.get_model("auth", "User").objects.filter(username__in=["admin", "alice"]).delete()


class Migration(migrations.Migration):
    dependencies = [("demo", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create_users, remove_users)]
