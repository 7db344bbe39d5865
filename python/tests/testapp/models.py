import uuid

from django.conf import settings
from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100)


class Book(models.Model):
    title = models.CharField(max_length=200)
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    price = models.DecimalField(max_digits=8, decimal_places=2)
    published = models.DateTimeField(null=True, blank=True)
    ref = models.UUIDField(default=uuid.uuid4)
    cover = models.FileField(upload_to="covers/", blank=True)
    secret_note = models.CharField(max_length=100, blank=True)


class Tag(models.Model):
    """A model whose primary key needs escaping in event names."""

    label = models.CharField(max_length=100, primary_key=True)


class Note(models.Model):
    """Owned rows: NoteEvents publishes them under the owner's id as well."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.CharField(max_length=200)


class FilterRow(models.Model):
    """One row of `orm_schema` in proto/vectors/filters.json: the ORM cross-check of the filter vectors."""

    id = models.IntegerField(primary_key=True)
    qty = models.IntegerField()
    total = models.DecimalField(max_digits=10, decimal_places=2)
    status = models.CharField(max_length=32)
    name = models.CharField(max_length=64)
