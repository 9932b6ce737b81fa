from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chatbot", "0006_message_streaming_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="bot",
            name="model_api_key",
            field=models.CharField(blank=True, max_length=500),
        ),
    ]
