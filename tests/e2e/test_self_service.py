"""Self-service in real Chromium: a plain user signs up (LIMEN_REGISTRATION=approval), is told the account
waits, is approved by the admin, creates a VM within the quota, is refused beyond it with the message in
the form, and sees the usage bars; on a desktop and at 390 px."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import PHONE, save_screenshot, sign_in, start_limen
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PASSWORD = "zoë's long password"
VM_PAGE = re.compile(r"/vms/[0-9a-f-]{36}$")  # a created VM's details page


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path_factory.mktemp("limen-self-service"), LIMEN_REGISTRATION="approval")
    yield process
    process.stop()


def create_in_form(page: Page, name: str, vcpus: int) -> None:
    page.fill("#name", name)
    page.fill("#vcpus", str(vcpus))
    page.fill("#memory_mib", "128")
    page.select_option("#iso", "")
    page.click("#submit")


def test_sign_up_approval_and_creating_within_the_quota(
    server: LimenProcess, new_page: Callable[..., Page], vm_names: Callable[[], str]
) -> None:
    user = f"Zoë-{uuid.uuid4().hex[:6]}"
    page = new_page()
    page.goto(f"{server.base_url}/login")
    expect(page.locator("#signup-offer")).to_be_visible()
    save_screenshot(page, "signup-offer-1280")
    page.click("#signup-link")
    expect(page.locator("#signup-mode")).to_contain_text("An administrator approves new accounts")
    page.fill("#signup-name", user)
    page.fill("#signup-password", PASSWORD)
    page.click("#signup-submit")
    expect(page.locator("#signup-done")).to_contain_text("An administrator must approve it")
    # Signing in before the approval says so, in its own words.
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_contain_text("Account awaiting approval")
    expect(page.locator("#login-error")).to_contain_text("ACCOUNT_PENDING")
    save_screenshot(page, "signup-pending-1280")

    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=20) as admin:
        users = {row["name"]: row for row in admin.get("/api/users").json()}
        assert users[user]["approved"] is False and users[user]["role"] == "user"
        assert admin.put(f"/api/users/{user}/approved", json={"approved": True}).status_code == 200
        quota = admin.put(f"/api/users/{user}/quota", json={"vms": 2, "vcpus": 1, "memory_mib": 512})
        assert quota.status_code == 200, quota.text

    sign_in(page, server.base_url, user, PASSWORD, next_path="/vms/new")
    expect(page.locator("#quota [data-resource='vms']")).to_contain_text("0 of 2")
    expect(page.locator("#vcpus-quota")).to_contain_text("At most 1")
    assert page.locator("#vcpus").get_attribute("max") == "1"
    first, second = vm_names(), vm_names()
    create_in_form(page, first, 1)
    page.wait_for_url(VM_PAGE)

    # Beyond the quota: a VM with 2 vCPUs could never start. The form says why, at the field.
    page.goto(f"{server.base_url}/vms/new")
    expect(page.locator("#quota [data-resource='vms']")).to_contain_text("1 of 2")
    page.fill("#name", second)
    page.evaluate("document.getElementById('vcpus').value = '2'")  # past the input's max, as a user could
    page.fill("#memory_mib", "128")
    page.select_option("#iso", "")
    page.click("#submit")
    expect(page.locator("#form-error")).to_contain_text("Quota exceeded")
    expect(page.locator("#vcpus-error")).to_have_text(
        f"user '{user}' quota on vCPUs: limit 1; a VM with 2 could never start within it (give it at most 1)")
    expect(page.locator("#vcpus")).to_have_attribute("aria-invalid", "true")
    save_screenshot(page, "create-quota-refused-1280")

    create_in_form(page, second, 1)
    page.wait_for_url(VM_PAGE)

    # The VM count is reached: the form says so and does not offer to create.
    page.goto(f"{server.base_url}/vms/new")
    expect(page.locator("#quota-note")).to_contain_text("quota allows 2 VMs and 2 exist")
    expect(page.locator("#submit")).to_be_disabled()
    save_screenshot(page, "create-quota-full-1280")

    page.goto(f"{server.base_url}/")
    expect(page.locator("#quota [data-resource='vms']")).to_contain_text("2 of 2")
    expect(page.locator("#vm-rows tr")).to_have_count(2)
    save_screenshot(page, "vm-list-quota-1280")

    phone = sign_in(new_page(PHONE), server.base_url, user, PASSWORD, next_path="/vms/new")
    expect(phone.locator("#quota-note")).to_be_visible()
    save_screenshot(phone, "create-quota-full-390")
    phone.goto(f"{server.base_url}/")
    expect(phone.locator("#quota [data-resource='vms']")).to_contain_text("2 of 2")
    save_screenshot(phone, "vm-list-quota-390")
    phone.goto(f"{server.base_url}/login")
    expect(phone.locator("#signup-offer")).to_be_visible()
    save_screenshot(phone, "signup-offer-390")
