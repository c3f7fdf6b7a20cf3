"""The defaults installer takes only a plain table name into its SQL."""

from __future__ import annotations

from typing import Any

import pytest

from northstar_runtime.tenant_defaults import TenantDefaults


class Nothing(TenantDefaults):
    async def install(self, tenant: str) -> None:
        """Nothing to create."""


@pytest.mark.parametrize("table", ["report_tenants; DROP TABLE x", "Tenants", "", "a" * 64])
def test_a_table_name_that_is_no_plain_identifier_is_refused(table: str) -> None:
    pool: Any = None
    with pytest.raises(ValueError, match="not a table name"):
        Nothing(pool, table, list, "defaults")


def test_a_plain_table_name_is_taken() -> None:
    pool: Any = None
    Nothing(pool, "alert_tenants", list, "defaults")
