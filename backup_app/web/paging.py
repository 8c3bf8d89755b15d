"""The `?page=` of a listing page: any input is a page that exists, never an error."""
from flask import request
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select

from backup_app.extensions import db

# Beyond any catalog's last page, and small enough that its offset fits a 64-bit integer.
MAX_PAGE = 10**9


def requested_page(query: Select, per_page: int) -> Pagination:
    """The page `?page=` asks for, clamped: not a number or below 1 is the first page, past the
    end the last one."""
    number = min(max(request.args.get("page", 1, type=int), 1), MAX_PAGE)
    page = db.paginate(query, page=number, per_page=per_page, error_out=False)
    if page.page > page.pages > 0:
        page = db.paginate(query, page=page.pages, per_page=per_page, error_out=False)
    return page
