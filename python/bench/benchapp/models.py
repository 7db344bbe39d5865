from django.db import models


class Item(models.Model):
    """A typical small row: a few text, number and date fields."""

    name = models.CharField(max_length=100)
    qty = models.IntegerField()
    price = models.DecimalField(max_digits=8, decimal_places=2)
    created = models.DateTimeField()

    class Meta:
        app_label = "benchapp"
