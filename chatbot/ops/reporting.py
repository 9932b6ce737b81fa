"""What error reports (and DEBUG's pages) may show of the settings."""

import re

from django.views.debug import SafeExceptionReporterFilter

# A URL with credentials in it: scheme://user:password@host (or scheme://:password@host).
_URL_WITH_CREDENTIALS = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\s]*@", flags=re.I)


class CredentialsHiddenFilter(SafeExceptionReporterFilter):
    """Django's filter hides settings named like API keys, tokens, keys, secrets and passwords. Service addresses
    hold passwords too (`redis://:password@host`, `postgres://user:password@host`), in settings named URL, DSN,
    LOCATION or HOSTS, inside CACHES and CHANNEL_LAYERS, and under other names (CELERY_RESULT_BACKEND): hidden by
    name at any depth, and any value that is a URL with credentials in it."""

    hidden_settings = re.compile("API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|DSN|LOCATION|HOSTS", flags=re.I)

    def cleanse_setting(self, key, value):
        if type(value) is str and _URL_WITH_CREDENTIALS.match(value):  # not a lazy object posing as one
            return self.cleansed_substitute
        return super().cleanse_setting(key, value)
